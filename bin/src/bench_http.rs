//! `ferrojob bench http runs`: API runs over HTTP, with the load generator in a process of
//! its own, against the ceiling of a bare axum server doing the same JSON work.
//!
//! Three processes besides the bench's own (which hosts the `--workers` noop workers):
//!
//! - a `ferrojob-server` (LogStore with durable group commits in a temp dir, no rate limit);
//! - `ferrojob bench http load`, the load generator: `--connections` keep-alive HTTP/1.1
//!   connections, each sending one request and reading its answer before the next (a small
//!   hand-written client on tokio, so that the generator costs little CPU), started once per
//!   measurement; it prints one JSON line with its counts, rate and latencies;
//! - `ferrojob bench http ceiling`: an axum hello-world that does the route's JSON work and
//!   nothing else — checks that a bearer token is present, parses the body with serde_json
//!   into the same `RunJob` / `RunJobBatch` types, answers `RunCreated` / `RunBatchCreated`
//!   with ids from a counter. No store, no core, no audit.
//!
//! Each round measures, one after the other: the single-run route
//! (`POST .../jobs/{id}/run`, one run per request), the batch route (`POST .../jobs/{id}/runs`,
//! `--batch` runs per request), and the ceiling on both paths. A run is durable when its
//! answer arrives (the server answers after the write is acknowledged); `finished` counts until
//! the server's `ferrojob_instances_finished_total` has every run's final status. The rows go
//! to `bench-reports/http_runs.json` (medians over `--rounds`, every round's figure listed).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferrojob::api::{CreateApp, JobBody, RunBatchCreated, RunCreated, RunJob, RunJobBatch};
use ferrojob::client::Client;
use ferrojob::ids::InstanceId;
use ferrojob::time_expression::TimeExpressionType;
use ferrojob::worker::{Worker, WorkerConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::harness::{default_report, write_report, ChildProc, ServerProc, Usage};

/// The batch route's goal, durable runs per second.
const BATCH_GOAL_PER_S: f64 = 100_000.0;

/// `ferrojob bench http ...`
#[derive(Debug, clap::Subcommand)]
pub enum HttpCmd {
    /// Single-run route, batch route and the axum ceiling, with the load generator in its own
    /// process.
    Runs(RunsArgs),
    /// The load generator (a process of its own; prints one JSON line).
    #[command(hide = true)]
    Load(LoadArgs),
    /// The ceiling: axum + serde_json doing the run routes' JSON work only.
    #[command(hide = true)]
    Ceiling,
}

/// `ferrojob bench http runs` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RunsArgs {
    /// Runs per measurement (each route, each round).
    #[arg(long, default_value_t = 100_000)]
    runs: u64,
    /// Runs per request on the batch route (1 to 1000).
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Workers (noop processor) in this process.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Rounds (single, batch, ceiling each); the rows hold the medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Report file (default `$CARGO_TARGET_DIR/bench-reports/http_runs.json`).
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// A flag for the `ferrojob-server` (repeat for more), e.g.
    /// `--server-arg=--keep-finished-runs=1000000000`.
    #[arg(long, allow_hyphen_values = true)]
    server_arg: Vec<String>,
}

/// `ferrojob bench http load` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Server address.
    #[arg(long)]
    addr: SocketAddr,
    /// Request path.
    #[arg(long)]
    path: String,
    /// Bearer token.
    #[arg(long)]
    token: String,
    /// JSON body of every request.
    #[arg(long)]
    body: String,
    /// Requests in all.
    #[arg(long)]
    requests: u64,
    /// Keep-alive connections.
    #[arg(long)]
    connections: usize,
}

/// What the load generator prints.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LoadResult {
    requests: u64,
    ok: u64,
    failed: u64,
    elapsed_s: f64,
    requests_per_s: f64,
    latency_p50_us: u64,
    latency_p99_us: u64,
    /// Status line and body of the first failed answer.
    first_error: Option<String>,
}

/// One measurement of one target.
#[derive(Debug, Clone, Copy, Default)]
struct Round {
    requests_per_s: f64,
    runs_per_s: f64,
    finished_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    server_cpu_s: f64,
    load_cpu_s: f64,
    /// The server's awaited store commits during the measurement
    /// (`ferrojob_store_commit_seconds`): p50 and p99, µs.
    commit_p50_us: u64,
    commit_p99_us: u64,
}

/// Runs `ferrojob bench http ...`.
pub async fn run(cmd: &HttpCmd, json: bool) -> Result<()> {
    match cmd {
        HttpCmd::Runs(args) => runs(args, json).await,
        HttpCmd::Load(args) => {
            println!("http-load ready");
            let result = load(args).await?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        HttpCmd::Ceiling => ceiling().await,
    }
}

async fn runs(args: &RunsArgs, json: bool) -> Result<()> {
    if args.runs == 0 || args.connections == 0 || args.rounds == 0 {
        bail!("--runs, --connections and --rounds must be at least 1");
    }
    if !(1..=1000).contains(&args.batch) {
        bail!("--batch must be 1 to 1000");
    }
    let dir = tempfile::Builder::new()
        .prefix("ferrojob-bench-http-")
        .tempdir()
        .context("creating a temp data dir")?;
    let server = ServerProc::spawn(
        &dir.path().join("data"),
        &dir.path().join("server.log"),
        &args.server_arg,
    )?;
    let (ceiling, ceiling_line) = ChildProc::spawn(
        {
            let mut c = Command::new(std::env::current_exe()?);
            c.args(["bench", "http", "ceiling"]);
            c
        },
        "http-ceiling ready",
    )?;
    let ceiling_addr: SocketAddr = ceiling_line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .context("no http= from the ceiling")?
        .parse()?;
    let client = Client::new(&format!("http://{}", server.http), &server.token)?;
    let (app, secret) = ("bench", "bench-secret-0123");
    client
        .create_app(&CreateApp {
            name: app.into(),
            secret: secret.into(),
        })
        .await?;
    let job = client
        .create_job(
            app,
            &JobBody::new("noop", TimeExpressionType::Api, "", "noop"),
        )
        .await?
        .id;
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        let config = WorkerConfig::new(server.transport, app, secret);
        workers.push(Worker::builder(config).builtins().start().await?);
    }
    super::wait_for_workers(&client, app, args.workers).await?;

    let single_path = format!("/v1/apps/{app}/jobs/{}/run", job.get());
    let batch_path = format!("/v1/apps/{app}/jobs/{}/runs", job.get());
    let single_body = serde_json::to_string(&RunJob::default())?;
    let batch_body = serde_json::to_string(&RunJobBatch::of(usize::try_from(args.batch)?))?;
    let batch_requests = args.runs.div_ceil(args.batch);
    // A warm-up of each route, not counted: connections, allocator, store segments.
    for (path, body, requests) in [
        (&single_path, &single_body, 2000),
        (&batch_path, &batch_body, 2000_u64.div_ceil(args.batch)),
    ] {
        let target = Target {
            addr: server.http,
            path,
            body,
            token: &server.token,
            requests,
            per_request: 1,
            connections: args.connections,
        };
        measure(&target, None, &server.proc).await?;
    }
    let mut rounds: [Vec<Round>; 4] = Default::default();
    for round in 0..args.rounds {
        let targets: [(&str, SocketAddr, &str, &str, u64, u64, bool); 4] = [
            (
                "single",
                server.http,
                &single_path,
                &single_body,
                args.runs,
                1,
                true,
            ),
            (
                "batch",
                server.http,
                &batch_path,
                &batch_body,
                batch_requests,
                args.batch,
                true,
            ),
            (
                "ceiling single",
                ceiling_addr,
                &single_path,
                &single_body,
                args.runs,
                1,
                false,
            ),
            (
                "ceiling batch",
                ceiling_addr,
                &batch_path,
                &batch_body,
                batch_requests,
                args.batch,
                false,
            ),
        ];
        for (i, (name, addr, path, body, requests, per_request, durable)) in
            targets.into_iter().enumerate()
        {
            let target = Target {
                addr,
                path,
                body,
                token: &server.token,
                requests,
                per_request,
                connections: args.connections,
            };
            let process = if durable { &server.proc } else { &ceiling };
            let r = measure(&target, durable.then_some(&client), process).await?;
            if !json {
                eprintln!(
                    "round {} {name}: {:.0} requests/s, {:.0} runs/s (finished {:.0}/s), p50 {} µs, p99 {} µs, server CPU {:.1} s, load CPU {:.1} s, store commits p50 {} µs p99 {} µs",
                    round + 1,
                    r.requests_per_s,
                    r.runs_per_s,
                    r.finished_per_s,
                    r.p50_us,
                    r.p99_us,
                    r.server_cpu_s,
                    r.load_cpu_s,
                    r.commit_p50_us,
                    r.commit_p99_us
                );
            }
            if let Some(v) = rounds.get_mut(i) {
                v.push(r);
            }
        }
    }
    for w in workers {
        w.shutdown().await;
    }
    drop(ceiling);
    drop(server);

    let [single, batch, ceil_single, ceil_batch] = rounds;
    let med = |v: &[Round], f: fn(&Round) -> f64| median(v.iter().map(f).collect());
    let all = |v: &[Round], f: fn(&Round) -> f64| -> Vec<f64> {
        v.iter().map(|r| (f(r) * 10.0).round() / 10.0).collect()
    };
    // Ratios per round (the same round's figures), then their median.
    let ratio = |a: &[Round], b: &[Round]| -> f64 {
        median(
            a.iter()
                .zip(b)
                .map(|(a, b)| b.requests_per_s / a.requests_per_s.max(f64::MIN_POSITIVE))
                .collect(),
        )
    };
    let row = |function: &str, param: String, v: &[Round], extra: serde_json::Value| {
        let mut row = serde_json::json!({
            "function": function,
            "param": param,
            "rounds": v.len(),
            "connections": args.connections,
            "requests_per_s": med(v, |r| r.requests_per_s),
            "runs_per_s": med(v, |r| r.runs_per_s),
            "runs_per_s_each_round": all(v, |r| r.runs_per_s),
            "latency_p50_us": med(v, |r| r.p50_us as f64),
            "latency_p99_us": med(v, |r| r.p99_us as f64),
            "server_cpu_s": med(v, |r| r.server_cpu_s),
            "load_cpu_s": med(v, |r| r.load_cpu_s),
            "store_commit_p50_us": med(v, |r| r.commit_p50_us as f64),
            "store_commit_p99_us": med(v, |r| r.commit_p99_us as f64),
        });
        if let (Some(map), serde_json::Value::Object(more)) = (row.as_object_mut(), extra) {
            map.extend(more);
        }
        row
    };
    let rows = vec![
        row(
            "single_run_route",
            format!("{}x1", args.runs),
            &single,
            serde_json::json!({
                "durable_runs_per_s": med(&single, |r| r.runs_per_s),
                "finished_runs_per_s": med(&single, |r| r.finished_per_s),
                "workers": args.workers,
                "ceiling_over_route": ratio(&single, &ceil_single),
            }),
        ),
        row(
            "batch_run_route",
            format!("{}x{}", args.runs, args.batch),
            &batch,
            serde_json::json!({
                "durable_runs_per_s": med(&batch, |r| r.runs_per_s),
                "finished_runs_per_s": med(&batch, |r| r.finished_per_s),
                "workers": args.workers,
                "goal_runs_per_s": BATCH_GOAL_PER_S,
                "goal_over_route": BATCH_GOAL_PER_S / med(&batch, |r| r.runs_per_s).max(f64::MIN_POSITIVE),
                "ceiling_over_route": ratio(&batch, &ceil_batch),
            }),
        ),
        row(
            "axum_ceiling_single",
            format!("{}x1", args.runs),
            &ceil_single,
            serde_json::json!({}),
        ),
        row(
            "axum_ceiling_batch",
            format!("{}x{}", args.runs, args.batch),
            &ceil_batch,
            serde_json::json!({}),
        ),
    ];
    let path = args
        .report
        .clone()
        .unwrap_or_else(|| default_report("http_runs"));
    write_report(&path, &rows)?;
    for r in &rows {
        println!("{}", serde_json::to_string(r)?);
    }
    Ok(())
}

/// The median (0 for none).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v.get(n / 2).copied().unwrap_or(0.0),
        n => {
            (v.get(n / 2 - 1).copied().unwrap_or(0.0) + v.get(n / 2).copied().unwrap_or(0.0)) / 2.0
        }
    }
}

/// What one load-generator run sends.
struct Target<'a> {
    addr: SocketAddr,
    path: &'a str,
    body: &'a str,
    token: &'a str,
    requests: u64,
    per_request: u64,
    connections: usize,
}

/// Starts the load generator on `t`, waits for its answer and — against the ferrojob server
/// (`finished_of`) — until every run's final status is recorded; `server` is the process
/// whose CPU time is counted.
async fn measure(
    t: &Target<'_>,
    finished_of: Option<&Client>,
    server: &ChildProc,
) -> Result<Round> {
    let metrics_before = match finished_of {
        Some(client) => client.metrics().await?,
        None => String::new(),
    };
    let finished_before = finished_total(&metrics_before);
    let server_before = server.usage();
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["bench", "http", "load"])
        .args(["--addr", &t.addr.to_string(), "--path", t.path])
        .args(["--token", t.token, "--body", t.body])
        .args(["--requests", &t.requests.to_string()])
        .args(["--connections", &t.connections.to_string()]);
    let started = Instant::now();
    let (load_proc, _) = ChildProc::spawn(command, "http-load ready")?;
    let pid = load_proc.pid();
    let line = tokio::task::spawn_blocking(move || {
        let line = load_proc.next_line(Duration::from_secs(900));
        (load_proc, line)
    });
    let (load_proc, line) = line.await?;
    let load_cpu_ms = Usage::of(pid).cpu_ms;
    drop(load_proc);
    let result: LoadResult =
        serde_json::from_str(&line.context("the load generator gave no result")?)
            .context("the load generator's result")?;
    if result.failed > 0 {
        bail!(
            "{} of {} requests failed; first: {}",
            result.failed,
            result.requests,
            result.first_error.unwrap_or_default()
        );
    }
    let runs = result.ok.saturating_mul(t.per_request);
    let mut finished_per_s = 0.0;
    let mut commits = (0, 0);
    if let Some(client) = finished_of {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let done = finished_total(&client.metrics().await?).saturating_sub(finished_before);
            if done >= runs {
                break;
            }
            if Instant::now() > deadline {
                bail!("{done} of {runs} runs finished within 600 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        finished_per_s = runs as f64 / started.elapsed().as_secs_f64();
        let name = "ferrojob_store_commit_seconds";
        let before = super::histogram(&metrics_before, name);
        let delta: Vec<(f64, u64)> = super::histogram(&client.metrics().await?, name)
            .into_iter()
            .map(|(bound, count)| {
                let was = before
                    .iter()
                    .find(|(b, _)| *b == bound)
                    .map_or(0, |(_, c)| *c);
                (bound, count.saturating_sub(was))
            })
            .collect();
        commits = (
            super::histogram_quantile(&delta, 0.50),
            super::histogram_quantile(&delta, 0.99),
        );
    }
    let server_cpu_s = server.usage().cpu_ms.saturating_sub(server_before.cpu_ms) as f64 / 1000.0;
    Ok(Round {
        requests_per_s: result.requests_per_s,
        runs_per_s: runs as f64 / result.elapsed_s.max(f64::MIN_POSITIVE),
        finished_per_s,
        p50_us: result.latency_p50_us,
        p99_us: result.latency_p99_us,
        server_cpu_s,
        load_cpu_s: load_cpu_ms as f64 / 1000.0,
        commit_p50_us: commits.0,
        commit_p99_us: commits.1,
    })
}

/// Final statuses durably recorded (`ferrojob_instances_finished_total`, all statuses).
fn finished_total(metrics: &str) -> u64 {
    super::finished_total(metrics)
}

// ----- the load generator -----

/// Sends `args.requests` requests over `args.connections` keep-alive connections.
async fn load(args: &LoadArgs) -> Result<LoadResult> {
    let request = Arc::new(
        format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            args.path,
            args.addr,
            args.token,
            args.body.len(),
            args.body
        )
        .into_bytes(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let s = TcpStream::connect(args.addr)
            .await
            .with_context(|| format!("connecting to {}", args.addr))?;
        s.set_nodelay(true)?;
        conns.push(s);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for stream in conns {
        let request = Arc::clone(&request);
        let next = Arc::clone(&next);
        let total = args.requests;
        tasks.spawn(async move { connection(stream, &request, &next, total).await });
    }
    let mut result = LoadResult::default();
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let c = done.context("a load task panicked")??;
        result.ok += c.ok;
        result.failed += c.failed;
        if result.first_error.is_none() {
            result.first_error = c.first_error;
        }
        latencies.extend(c.latencies_us);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let q = |q: f64| -> u64 {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).copied().unwrap_or(0)
    };
    result.requests = result.ok + result.failed;
    result.elapsed_s = elapsed;
    result.requests_per_s = result.requests as f64 / elapsed.max(f64::MIN_POSITIVE);
    result.latency_p50_us = q(0.50);
    result.latency_p99_us = q(0.99);
    Ok(result)
}

/// What one connection counted.
#[derive(Debug, Default)]
struct ConnResult {
    ok: u64,
    failed: u64,
    first_error: Option<String>,
    latencies_us: Vec<u64>,
}

/// Largest answer head or body the generator reads, bytes.
const MAX_ANSWER: usize = 1 << 20;

/// One connection: a request, its whole answer, the next request, until `total` are taken.
async fn connection(
    mut stream: TcpStream,
    request: &[u8],
    next: &AtomicU64,
    total: u64,
) -> Result<ConnResult> {
    let mut out = ConnResult::default();
    let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
    while next.fetch_add(1, Ordering::Relaxed) < total {
        let sent = Instant::now();
        stream.write_all(request).await?;
        let (status, body) = read_answer(&mut stream, &mut buf).await?;
        out.latencies_us
            .push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
        if status == 200 {
            out.ok += 1;
        } else {
            out.failed += 1;
            out.first_error
                .get_or_insert_with(|| format!("{status} {}", String::from_utf8_lossy(&body)));
        }
    }
    Ok(out)
}

/// Reads one HTTP/1.1 answer with a `Content-Length` body: (status, body). What follows it
/// stays in `buf`.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(u16, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned();
            let mut lines = head.split("\r\n");
            let status: u16 = lines
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("not an HTTP answer: {head:?}"))?;
            let mut len = None;
            for l in lines {
                let Some((name, value)) = l.split_once(':') else {
                    continue;
                };
                if name.eq_ignore_ascii_case("content-length") {
                    len = value.trim().parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("chunked answers are not supported: {head:?}");
                }
            }
            let len = len.with_context(|| format!("no Content-Length: {head:?}"))?;
            if len > MAX_ANSWER {
                bail!("an answer of {len} bytes");
            }
            let start = end + 4;
            while buf.len() < start + len {
                if stream.read_buf(buf).await? == 0 {
                    bail!("the server closed the connection mid-answer");
                }
            }
            let body = buf.get(start..start + len).unwrap_or_default().to_vec();
            buf.drain(..start + len);
            return Ok((status, body));
        }
        if buf.len() > MAX_ANSWER {
            bail!("an answer head beyond {MAX_ANSWER} bytes");
        }
        if stream.read_buf(buf).await? == 0 {
            bail!("the server closed the connection");
        }
    }
}

// ----- the ceiling -----

/// An axum server on 127.0.0.1 that does the run routes' JSON work only; prints its address.
async fn ceiling() -> Result<()> {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::{Json, Router};

    async fn single(
        axum::extract::State(ids): axum::extract::State<Arc<AtomicU64>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Json<RunCreated>, StatusCode> {
        bearer(&headers)?;
        let _run: RunJob = serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
        Ok(Json(RunCreated {
            instance_id: InstanceId(ids.fetch_add(1, Ordering::Relaxed)),
        }))
    }
    async fn batch(
        axum::extract::State(ids): axum::extract::State<Arc<AtomicU64>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Json<RunBatchCreated>, StatusCode> {
        bearer(&headers)?;
        let runs: RunJobBatch =
            serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
        let n = runs.runs.len() as u64;
        let first = ids.fetch_add(n, Ordering::Relaxed);
        Ok(Json(RunBatchCreated {
            instance_ids: (first..first + n).map(InstanceId).collect(),
        }))
    }
    fn bearer(headers: &HeaderMap) -> Result<(), StatusCode> {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .filter(|t| !t.is_empty())
            .map(drop)
            .ok_or(StatusCode::UNAUTHORIZED)
    }

    let router = Router::new()
        .route("/v1/apps/{app}/jobs/{id}/run", post(single))
        .route("/v1/apps/{app}/jobs/{id}/runs", post(batch))
        .with_state(Arc::new(AtomicU64::new(1)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("http-ceiling ready http={}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}
