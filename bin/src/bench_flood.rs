//! `ferrojob bench flood`: dispatch throughput and latency with and without an attack on the
//! server's ports.
//!
//! Starts a `ferrojob-server` process (LogStore in a temp dir, the limits of the README's
//! "Limits" table at their defaults unless `--server-arg` changes them) and `--workers`
//! workers with the `noop` processor in this process. Then, `--rounds` times, it measures a
//! batch of `--instances` API runs through the HTTP OpenAPI exactly as `bench dispatch
//! --connect` does (durable instances/s, dispatch latency from the server's histogram), once
//! quiet and once while an attacker process (this executable's hidden `bench flood-attack`)
//! hits both ports from up to 250 loopback source addresses (`127.0.2.x`):
//!
//! - worker port: connections that never send a byte (`--idle-connections`), connections
//!   that announce a 4 MiB frame or trickle a small one byte by byte
//!   (`--big-frame-connections`), and back-to-back handshakes with a wrong secret for the
//!   real app (`--bad-handshakes`; these come from 127.0.0.1, the workers' own address, as
//!   the handshake client picks no source);
//! - HTTP port: clients that pipeline requests for the 160 KB OpenAPI document and read one
//!   byte a second (`--slow-readers`), and requests with a 1 MiB header (`--big-headers`).
//!
//! A closed attack connection is reopened after `--reopen-ms`, so the pressure stays on.
//! Reported per measurement: the dispatch figures, the server's resident set and open files
//! (sampled every 100 ms) and its CPU time; overall: the server's peak resident set
//! (`VmHWM`), the attacker's CPU time (on a 2-core machine it competes with the server), the
//! worker port's limit counters, and the workers' reconnects (worker-port handshakes
//! completed after the workers first registered, from `/metrics`: the attacker never
//! completes one). Every row goes to `--report` (default
//! `$CARGO_TARGET_DIR/bench-reports/flood.json`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ferrojob::api::{CreateApp, JobBody};
use ferrojob::client::Client;
use ferrojob::time_expression::TimeExpressionType;
use ferrojob::worker::{Worker, WorkerConfig};
use ferrojob_transport::frame::{Flags, FrameHeader};
use ferrojob_transport::message::MessageKind;
use ferrojob_transport::net::NetConfig;
use ferrojob_transport::{AppSecret, ClientIdentity, TransportMetrics};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::harness::{self, ChildProc, ServerProc, Usage};
use super::{Load, Measured};

/// `ferrojob bench flood` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct FloodArgs {
    /// Quiet/flood pairs, measured alternately (quiet first).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// API runs per measurement.
    #[arg(long, default_value_t = 50_000)]
    instances: u64,
    /// Workers (noop processor), in this process.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Run requests outstanding at once.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    #[command(flatten)]
    attack: AttackLoad,
    /// From the attacker being ready to the start of the flood measurement, ms.
    #[arg(long, default_value_t = 2000)]
    warmup_ms: u64,
    /// From the attacker's stop to the next quiet measurement, ms.
    #[arg(long, default_value_t = 2000)]
    cooldown_ms: u64,
    /// One more flag for the server (repeat it), e.g. `--server-arg=--max-handshaking=64`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Report file; default `$CARGO_TARGET_DIR/bench-reports/flood.json` (or
    /// `target/bench-reports/flood.json`).
    #[arg(long)]
    report: Option<PathBuf>,
}

/// How hard the attacker pushes.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct AttackLoad {
    /// Worker-port connections held open that never send a byte.
    #[arg(long, default_value_t = 2000)]
    idle_connections: usize,
    /// Worker-port connections that announce a 4 MiB frame (half of them) or trickle a
    /// 4000-byte one a byte every 100 ms (the other half).
    #[arg(long, default_value_t = 200)]
    big_frame_connections: usize,
    /// Loops of worker-port handshakes with a wrong secret, back to back.
    #[arg(long, default_value_t = 16)]
    bad_handshakes: usize,
    /// HTTP clients that pipeline 64 requests for the OpenAPI document and read one byte a
    /// second.
    #[arg(long, default_value_t = 128)]
    slow_readers: usize,
    /// HTTP loops sending a request with a 1 MiB header, back to back.
    #[arg(long, default_value_t = 4)]
    big_headers: usize,
    /// Source addresses the attack connections spread over (127.0.2.1 ..), 1 to 250.
    #[arg(long, default_value_t = 64)]
    sources: u8,
    /// A closed idle, big-frame or slow-reading connection is reopened after this long, ms.
    #[arg(long, default_value_t = 500)]
    reopen_ms: u64,
}

impl AttackLoad {
    /// The flags that give this load to `bench flood-attack`.
    fn to_args(&self) -> Vec<String> {
        [
            ("--idle-connections", self.idle_connections.to_string()),
            (
                "--big-frame-connections",
                self.big_frame_connections.to_string(),
            ),
            ("--bad-handshakes", self.bad_handshakes.to_string()),
            ("--slow-readers", self.slow_readers.to_string()),
            ("--big-headers", self.big_headers.to_string()),
            ("--sources", self.sources.to_string()),
            ("--reopen-ms", self.reopen_ms.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect()
    }
}

/// `ferrojob bench flood-attack` flags (started by `bench flood`; stops when its stdin
/// closes and prints one JSON line of [`AttackStats`]).
#[derive(Debug, Clone, clap::Args)]
pub struct AttackArgs {
    /// The server's worker port.
    #[arg(long)]
    transport: SocketAddr,
    /// The server's HTTP port.
    #[arg(long)]
    http: SocketAddr,
    /// The app the wrong-secret handshakes name.
    #[arg(long)]
    app: String,
    #[command(flatten)]
    load: AttackLoad,
}

/// What the attacker did, counted over its life.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AttackStats {
    /// Worker-port connections opened (idle and big-frame ones).
    worker_port_connections: u64,
    /// Of those, closed by the server.
    worker_port_closed_by_server: u64,
    /// Frames announced over the pre-authentication limit.
    big_frames_announced: u64,
    /// Wrong-secret handshakes refused.
    bad_handshakes_refused: u64,
    /// Wrong-secret handshakes the server accepted (must stay 0).
    bad_handshakes_accepted: u64,
    /// Slow-reading HTTP connections opened.
    slow_reader_connections: u64,
    /// Of those, closed by the server.
    slow_reader_closed_by_server: u64,
    /// Requests with a 1 MiB header sent (or cut short by the server).
    big_header_requests: u64,
    /// Of those, answered 431.
    big_header_431: u64,
    /// Connections the attacker could not open (its own limits, refused, timed out).
    connect_errors: u64,
}

/// The same counters, shared by the attack tasks.
#[derive(Debug, Default)]
struct Counters {
    worker_port_connections: AtomicU64,
    worker_port_closed_by_server: AtomicU64,
    big_frames_announced: AtomicU64,
    bad_handshakes_refused: AtomicU64,
    bad_handshakes_accepted: AtomicU64,
    slow_reader_connections: AtomicU64,
    slow_reader_closed_by_server: AtomicU64,
    big_header_requests: AtomicU64,
    big_header_431: AtomicU64,
    connect_errors: AtomicU64,
}

impl Counters {
    fn stats(&self) -> AttackStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AttackStats {
            worker_port_connections: get(&self.worker_port_connections),
            worker_port_closed_by_server: get(&self.worker_port_closed_by_server),
            big_frames_announced: get(&self.big_frames_announced),
            bad_handshakes_refused: get(&self.bad_handshakes_refused),
            bad_handshakes_accepted: get(&self.bad_handshakes_accepted),
            slow_reader_connections: get(&self.slow_reader_connections),
            slow_reader_closed_by_server: get(&self.slow_reader_closed_by_server),
            big_header_requests: get(&self.big_header_requests),
            big_header_431: get(&self.big_header_431),
            connect_errors: get(&self.connect_errors),
        }
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The `i`-th attack source address: 127.0.2.1 up to 127.0.2.`sources`.
fn source(i: usize, sources: u8) -> IpAddr {
    let n = u8::try_from(i % usize::from(sources.max(1))).unwrap_or(0);
    IpAddr::V4(Ipv4Addr::new(127, 0, 2, n.saturating_add(1)))
}

/// A TCP connection to `to` from `from` (port chosen by the system).
async fn connect_from(from: IpAddr, to: SocketAddr, recv_buffer: Option<u32>) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    Ok(tokio::time::timeout(Duration::from_secs(5), socket.connect(to)).await??)
}

/// Reads until the peer closes (or fails); answers when it did.
async fn until_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 512];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// Runs the attack until stdin closes, then prints its [`AttackStats`] as one JSON line.
pub(super) async fn attack(args: &AttackArgs) -> Result<()> {
    let load = &args.load;
    if load.sources == 0 || load.sources > 250 {
        bail!("--sources must be 1 to 250");
    }
    let counters = Arc::new(Counters::default());
    let reopen = Duration::from_millis(load.reopen_ms);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..load.idle_connections {
        let (c, from, to) = (
            Arc::clone(&counters),
            source(i, load.sources),
            args.transport,
        );
        tasks.spawn(async move {
            loop {
                match connect_from(from, to, None).await {
                    Ok(mut stream) => {
                        inc(&c.worker_port_connections);
                        until_closed(&mut stream).await;
                        inc(&c.worker_port_closed_by_server);
                    }
                    Err(_) => inc(&c.connect_errors),
                }
                tokio::time::sleep(reopen).await;
            }
        });
    }
    for i in 0..load.big_frame_connections {
        let (c, from, to) = (
            Arc::clone(&counters),
            source(i, load.sources),
            args.transport,
        );
        let trickle = i % 2 == 1;
        let header = FrameHeader {
            kind: MessageKind::Handshake,
            flags: Flags::NONE,
            payload_len: if trickle { 4000 } else { 4 * 1024 * 1024 },
            correlation: 0,
        }
        .to_bytes();
        tasks.spawn(async move {
            loop {
                match connect_from(from, to, None).await {
                    Ok(mut stream) => {
                        inc(&c.worker_port_connections);
                        if stream.write_all(&header).await.is_ok() {
                            if trickle {
                                // One byte every 100 ms until the server gives up on us.
                                while stream.write_all(&[0u8]).await.is_ok() {
                                    tokio::select! {
                                        _ = until_closed(&mut stream) => break,
                                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                                    }
                                }
                            } else {
                                inc(&c.big_frames_announced);
                                let _ = stream.write_all(&[0u8; 4096]).await;
                                until_closed(&mut stream).await;
                            }
                        }
                        inc(&c.worker_port_closed_by_server);
                    }
                    Err(_) => inc(&c.connect_errors),
                }
                tokio::time::sleep(reopen).await;
            }
        });
    }
    for _ in 0..load.bad_handshakes {
        let c = Arc::clone(&counters);
        let to = args.transport;
        let identity = ClientIdentity {
            app_name: args.app.clone(),
            worker_address: "127.0.0.1:1".into(),
            tags: Vec::new(),
            client_version: "ferrojob bench flood-attack".into(),
            secret: AppSecret::new(b"not-the-app-secret".to_vec()),
        };
        let metrics = Arc::new(TransportMetrics::default());
        tasks.spawn(async move {
            loop {
                let config = NetConfig::default();
                match ferrojob_transport::net::connect(
                    to,
                    config,
                    identity.clone(),
                    Arc::clone(&metrics),
                )
                .await
                {
                    Ok(connected) => {
                        inc(&c.bad_handshakes_accepted);
                        connected.handle.shutdown().await;
                    }
                    Err(_) => inc(&c.bad_handshakes_refused),
                }
                // Back to back, with a breath so a refused connect cannot spin.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    }
    let pipelined = "GET /v1/openapi.json HTTP/1.1\r\nHost: bench\r\n\r\n".repeat(64);
    for i in 0..load.slow_readers {
        let (c, from, to) = (Arc::clone(&counters), source(i, load.sources), args.http);
        let requests = pipelined.clone();
        tasks.spawn(async move {
            loop {
                match connect_from(from, to, Some(4096)).await {
                    Ok(mut stream) => {
                        inc(&c.slow_reader_connections);
                        let sent = tokio::time::timeout(
                            Duration::from_secs(5),
                            stream.write_all(requests.as_bytes()),
                        )
                        .await;
                        if matches!(sent, Ok(Ok(()))) {
                            let mut byte = [0u8; 1];
                            while matches!(stream.read(&mut byte).await, Ok(1)) {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                        inc(&c.slow_reader_closed_by_server);
                    }
                    Err(_) => inc(&c.connect_errors),
                }
                tokio::time::sleep(reopen).await;
            }
        });
    }
    let mut big_header = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Fill: ".to_vec();
    big_header.resize(big_header.len() + 1024 * 1024, b'a');
    big_header.extend_from_slice(b"\r\n\r\n");
    let big_header: Arc<[u8]> = big_header.into();
    for i in 0..load.big_headers {
        let (c, from, to) = (Arc::clone(&counters), source(i, load.sources), args.http);
        let request = Arc::clone(&big_header);
        tasks.spawn(async move {
            loop {
                match connect_from(from, to, None).await {
                    Ok(mut stream) => {
                        inc(&c.big_header_requests);
                        // The server may answer and close before the header is all sent.
                        let _ = stream.write_all(&request).await;
                        let mut head = [0u8; 12];
                        let read = tokio::time::timeout(
                            Duration::from_secs(5),
                            stream.read_exact(&mut head),
                        )
                        .await;
                        if matches!(read, Ok(Ok(_))) && head.ends_with(b" 431") {
                            inc(&c.big_header_431);
                        }
                    }
                    Err(_) => {
                        inc(&c.connect_errors);
                        tokio::time::sleep(reopen).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    }
    println!("flood-attack ready");
    // Runs until the parent closes our stdin.
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await
    .context("waiting for stdin")?;
    tasks.abort_all();
    println!("{}", serde_json::to_string(&counters.stats())?);
    Ok(())
}

/// One measurement, quiet or under flood.
#[derive(Debug, Serialize)]
struct MeasurementRow {
    function: &'static str,
    param: String,
    round: u32,
    instances: u64,
    workers: usize,
    in_flight: usize,
    #[serde(flatten)]
    measured: Measured,
    server_max_rss_bytes: u64,
    server_max_open_fds: u64,
    server_cpu_ms: u64,
    /// Lines the server logged (WARN and above) during the measurement.
    server_log_lines: u64,
    attacker_cpu_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    attack: Option<AttackStats>,
}

/// The whole run.
#[derive(Debug, Serialize)]
struct SummaryRow {
    function: &'static str,
    param: String,
    rounds: u32,
    instances: u64,
    quiet_median_per_s: f64,
    flood_median_per_s: f64,
    /// Flood ÷ quiet durable instances/s, per round.
    flood_to_quiet_ratios: Vec<f64>,
    flood_to_quiet_median_ratio: f64,
    quiet_median_p99_us: u64,
    flood_median_p99_us: u64,
    server_peak_rss_bytes: u64,
    server_max_open_fds: u64,
    worker_reconnects: u64,
    connected_workers_at_end: u64,
    failed_instances: u64,
    attack: AttackLoad,
    limit_counters: Value,
    goal_throughput_met: bool,
}

/// Samples a process's resident set and open files every 100 ms until stopped; answers the
/// largest of each.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl Sampler {
    fn start(usage: impl Fn() -> Usage + Send + 'static) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let (mut rss, mut fds) = (0, 0);
            loop {
                let u = usage();
                rss = rss.max(u.rss_bytes);
                fds = fds.max(u.open_fds);
                if flag.load(Ordering::Relaxed) {
                    return (rss, fds);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Sampler { stop, task }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or((0, 0))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The worker port's counters in `/metrics` (`ferrojob_transport_*_total`), by name.
fn transport_counters(metrics: &str) -> serde_json::Map<String, Value> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("ferrojob_transport_"))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((
                name.to_owned(),
                Value::from(value.trim().parse::<u64>().ok()?),
            ))
        })
        .collect()
}

const ESTABLISHED: &str = "ferrojob_transport_connections_established_total";

/// Runs `bench flood` and reports it.
pub(super) async fn flood(args: &FloodArgs, json: bool) -> Result<()> {
    if args.rounds == 0 || args.instances == 0 || args.workers == 0 || args.in_flight == 0 {
        bail!("--rounds, --instances, --workers and --in-flight must be at least 1");
    }
    if args.attack.sources == 0 || args.attack.sources > 250 {
        bail!("--sources must be 1 to 250");
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let dir = tempfile::Builder::new()
        .prefix("ferrojob-bench-flood-")
        .tempdir()
        .context("creating a temp data dir")?;
    let server = ServerProc::spawn(
        &dir.path().join("data"),
        &dir.path().join("server.log"),
        &args.server_args,
    )?;
    let server_pid_usage = {
        let pid = server.proc.pid();
        move || Usage::of(pid)
    };
    let client = Client::new(&format!("http://{}", server.http), &server.token)?;
    let (app, secret) = ("bench-flood", "bench-flood-secret-01");
    client
        .create_app(&CreateApp {
            name: app.into(),
            secret: secret.into(),
        })
        .await?;
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        let config = WorkerConfig::new(server.transport, app, secret);
        workers.push(Worker::builder(config).builtins().start().await?);
    }
    super::wait_for_workers(&client, app, args.workers).await?;
    let established_at_start = harness::metric(&client.metrics().await?, ESTABLISHED) as u64;

    let mut measurements = Vec::new();
    let mut ratios = Vec::new();
    let (mut quiet_p99, mut flood_p99) = (Vec::new(), Vec::new());
    let (mut quiet_rate, mut flood_rate) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        for flooded in [false, true] {
            let mut attacker = if flooded {
                let mut command = Command::new(&exe);
                command
                    .env("RUST_LOG", "error")
                    .args(["bench", "flood-attack", "--transport"])
                    .arg(server.transport.to_string())
                    .arg("--http")
                    .arg(server.http.to_string())
                    .args(["--app", app])
                    .args(args.attack.to_args());
                let (attacker, _) = ChildProc::spawn(command, "flood-attack ready")?;
                tokio::time::sleep(Duration::from_millis(args.warmup_ms)).await;
                Some(attacker)
            } else {
                None
            };
            let job = client
                .create_job(
                    app,
                    &JobBody::new(
                        format!("noop-{round}-{flooded}"),
                        TimeExpressionType::Api,
                        "",
                        "noop",
                    ),
                )
                .await?
                .id;
            let cpu_before = server.proc.usage().cpu_ms;
            let log_lines_before = server.log_lines();
            let attacker_cpu_before = attacker.as_ref().map_or(0, |a| a.usage().cpu_ms);
            let sampler = Sampler::start(server_pid_usage);
            let load = Load {
                instances: args.instances,
                in_flight: args.in_flight,
                rate: 0,
                read_back: false,
            };
            let bar = super::progress_bar(args.instances, json);
            let measured = super::measure(&client, None, app, job, load, &bar).await?;
            bar.finish_and_clear();
            let (max_rss, max_fds) = sampler.finish().await;
            let server_cpu_ms = server.proc.usage().cpu_ms.saturating_sub(cpu_before);
            let server_log_lines = server.log_lines().saturating_sub(log_lines_before);
            let (attacker_cpu_ms, attack) = match attacker.as_mut() {
                Some(a) => {
                    let cpu = a.usage().cpu_ms.saturating_sub(attacker_cpu_before);
                    a.close_stdin();
                    let line = a.next_line(Duration::from_secs(10)).unwrap_or_default();
                    let stats: AttackStats = serde_json::from_str(&line)
                        .with_context(|| format!("the attacker's report {line:?}"))?;
                    a.wait_exit(Duration::from_secs(5));
                    (cpu, Some(stats))
                }
                None => (0, None),
            };
            drop(attacker);
            let function = if flooded { "flood" } else { "quiet" };
            if !json {
                println!(
                    "round {round} {function:>5}: {:>8.0} durable instances/s, dispatch p99 {:>6} µs; server RSS ≤ {:.1} MiB, ≤ {max_fds} open files, CPU {server_cpu_ms} ms, {server_log_lines} log lines{}",
                    measured.durable_instances_per_s,
                    measured.dispatch_p99_us,
                    max_rss as f64 / (1024.0 * 1024.0),
                    if flooded {
                        format!("; attacker CPU {attacker_cpu_ms} ms")
                    } else {
                        String::new()
                    }
                );
            }
            if flooded {
                flood_rate.push(measured.durable_instances_per_s);
                flood_p99.push(measured.dispatch_p99_us as f64);
                if let Some(quiet) = quiet_rate.last() {
                    ratios.push(measured.durable_instances_per_s / quiet);
                }
                tokio::time::sleep(Duration::from_millis(args.cooldown_ms)).await;
            } else {
                quiet_rate.push(measured.durable_instances_per_s);
                quiet_p99.push(measured.dispatch_p99_us as f64);
            }
            measurements.push(MeasurementRow {
                function,
                param: format!("{}x{}/round{round}", args.instances, args.workers),
                round,
                instances: args.instances,
                workers: args.workers,
                in_flight: args.in_flight,
                measured,
                server_max_rss_bytes: max_rss,
                server_max_open_fds: max_fds,
                server_cpu_ms,
                server_log_lines,
                attacker_cpu_ms,
                attack,
            });
        }
    }
    let metrics = client.metrics().await?;
    let usage = server.proc.usage();
    let flood_to_quiet_median_ratio = median(ratios.clone());
    let summary = SummaryRow {
        function: "flood_summary",
        param: format!("{}x{}", args.instances, args.workers),
        rounds: args.rounds,
        instances: args.instances,
        quiet_median_per_s: median(quiet_rate),
        flood_median_per_s: median(flood_rate),
        flood_to_quiet_ratios: ratios,
        flood_to_quiet_median_ratio,
        quiet_median_p99_us: median(quiet_p99) as u64,
        flood_median_p99_us: median(flood_p99) as u64,
        server_peak_rss_bytes: usage.peak_rss_bytes,
        server_max_open_fds: measurements
            .iter()
            .map(|p| p.server_max_open_fds)
            .max()
            .unwrap_or(0),
        worker_reconnects: (harness::metric(&metrics, ESTABLISHED) as u64)
            .saturating_sub(established_at_start),
        connected_workers_at_end: harness::metric(&metrics, "ferrojob_connected_workers") as u64,
        failed_instances: measurements.iter().map(|p| p.measured.failed).sum(),
        attack: args.attack.clone(),
        limit_counters: Value::Object(transport_counters(&metrics)),
        goal_throughput_met: flood_to_quiet_median_ratio >= 0.8,
    };
    for w in workers {
        w.shutdown().await;
    }
    drop(server);
    let mut rows = measurements
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<Value>, _>>()?;
    rows.push(serde_json::to_value(&summary)?);
    let report = args
        .report
        .clone()
        .unwrap_or_else(|| harness::default_report("flood"));
    harness::write_report(&report, &rows)?;
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "flood ÷ quiet durable instances/s: {} (median {:.2}; goal ≥ 0.80 {})",
            summary
                .flood_to_quiet_ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            summary.flood_to_quiet_median_ratio,
            if summary.goal_throughput_met {
                "met"
            } else {
                "NOT met"
            }
        );
        println!(
            "  median: quiet {:.0}/s p99 {} µs, flood {:.0}/s p99 {} µs",
            summary.quiet_median_per_s,
            summary.quiet_median_p99_us,
            summary.flood_median_per_s,
            summary.flood_median_p99_us
        );
        println!(
            "  server peak RSS {:.1} MiB, ≤ {} open files; worker reconnects {}, workers connected at the end {}; instances not SUCCEED {}",
            summary.server_peak_rss_bytes as f64 / (1024.0 * 1024.0),
            summary.server_max_open_fds,
            summary.worker_reconnects,
            summary.connected_workers_at_end,
            summary.failed_instances
        );
        println!("  worker-port counters: {}", summary.limit_counters);
        println!("  rows written to {}", report.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_stay_in_their_range() {
        assert_eq!(source(0, 64), IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)));
        assert_eq!(source(63, 64), IpAddr::V4(Ipv4Addr::new(127, 0, 2, 64)));
        assert_eq!(source(64, 64), IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)));
        assert_eq!(source(1000, 250), IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)));
        assert_eq!(source(5, 0), IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)));
    }

    #[test]
    fn the_attack_load_round_trips_through_its_flags() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            load: AttackLoad,
        }
        let load = AttackLoad {
            idle_connections: 7,
            big_frame_connections: 6,
            bad_handshakes: 5,
            slow_readers: 4,
            big_headers: 3,
            sources: 2,
            reopen_ms: 1,
        };
        let mut argv = vec!["x".to_owned()];
        argv.extend(load.to_args());
        let parsed = <Cli as clap::Parser>::try_parse_from(argv).unwrap().load;
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            serde_json::to_value(&load).unwrap()
        );
    }

    #[test]
    fn transport_counters_are_read_by_name() {
        let text = "# HELP ferrojob_transport_x_total h\nferrojob_transport_preauth_pool_full_total 12\nferrojob_transport_connections_established_total 2\nferrojob_other 1\n";
        let c = transport_counters(text);
        assert_eq!(c.get("preauth_pool_full_total"), Some(&Value::from(12u64)));
        assert_eq!(
            c.get("connections_established_total"),
            Some(&Value::from(2u64))
        );
        assert_eq!(c.len(), 2);
    }
}
